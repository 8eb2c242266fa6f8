/**
 * The Jupyter server's side of the panel (`bytewax_nb.labserver`): requests go through
 * the server's own connection settings (its base URL, token and XSRF cookie).
 */
import { URLExt } from '@jupyterlab/coreutils';
import { ServerConnection } from '@jupyterlab/services';

import type { Listed } from './state';

/** What the server said was wrong, in its words. */
export class LabError extends Error {}

export async function api<T>(path: string, body?: unknown): Promise<T> {
  const settings = ServerConnection.makeSettings();
  const root = URLExt.join(settings.baseUrl, 'bytewax-nb', 'swarms');
  const url = path ? URLExt.join(root, path) : root;
  const init: RequestInit =
    body === undefined ? { method: 'GET' } : { method: 'POST', body: JSON.stringify(body) };
  let response: Response;
  try {
    response = await ServerConnection.makeRequest(url, init, settings);
  } catch (e) {
    throw new LabError(`cannot reach the Jupyter server: ${e}`);
  }
  const text = await response.text();
  let data: unknown = null;
  try {
    data = text ? JSON.parse(text) : null;
  } catch {
    data = null;
  }
  if (!response.ok) {
    const said = data as { error?: string; message?: string } | null;
    throw new LabError(said?.error ?? said?.message ?? `${response.status} ${response.statusText}`);
  }
  return data as T;
}

/** This machine's swarms and the deployed stacks. */
export function listSwarms(): Promise<Listed[]> {
  return api<Listed[]>('');
}

/** How a swarm is named in pickers and titles. */
export function label(row: Listed): string {
  return row.kind === 'stack' ? `${row.name} (deployed stack)` : `${row.name} (owner ${row.owner})`;
}
