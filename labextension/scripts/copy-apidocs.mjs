// Copies Swagger UI (swagger-ui-dist, an npm dependency) into the Python package, so a
// gateway's /docs page works offline: the wheel carries the assets.
import { copyFileSync, mkdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';

const require = createRequire(import.meta.url);
const dist = dirname(require.resolve('swagger-ui-dist/package.json'));
const out = new URL('../../bytewax_nb/gateway/apidocs/', import.meta.url);
mkdirSync(out, { recursive: true });
for (const name of ['swagger-ui-bundle.js', 'swagger-ui.css', 'LICENSE', 'package.json']) {
  copyFileSync(join(dist, name), new URL(name, out));
}
