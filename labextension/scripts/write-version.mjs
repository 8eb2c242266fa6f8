// Writes src/version.ts from package.json: the version lives in package.json alone
// (the Python package reads it there too, through hatch-nodejs-version).
import { readFileSync, writeFileSync } from 'node:fs';

const { version } = JSON.parse(readFileSync(new URL('../package.json', import.meta.url)));
const text = `// written by scripts/write-version.mjs from package.json; do not edit\nexport const VERSION = ${JSON.stringify(version)};\n`;
writeFileSync(new URL('../src/version.ts', import.meta.url), text);
