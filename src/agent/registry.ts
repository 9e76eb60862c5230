import { existsSync, readFileSync } from 'node:fs';
import { homedir } from 'node:os';
import { dirname, isAbsolute, join, resolve } from 'node:path';
import { z } from 'zod';
import { ReseedError, errorMessage } from '../errors.js';
import type { AgentAddress } from './client.js';
import { readTokenFile } from './config.js';

const entrySchema = z
  .object({
    url: z.url({ protocol: /^https?$/ }),
    tokenFile: z.string().min(1),
    ca: z.string().min(1).optional(),
    /** the client certificate and key shown to agents that require one */
    cert: z.string().min(1).optional(),
    key: z.string().min(1).optional(),
  })
  .strict();
const registrySchema = z.object({ agents: z.record(z.string(), entrySchema) }).strict();
export type RegistryEntry = z.infer<typeof entrySchema>;

/**
 * Where the CLI (and a sandbox's agent) finds agents by name: agents.json files, as `reseed agent
 * init` and `reseed sandbox up --agent` write them. Paths in a file are relative to it.
 */
export function registryFiles(): string[] {
  const named = process.env.RESEED_AGENTS;
  if (named !== undefined && !existsSync(named))
    throw new ReseedError('USAGE', `RESEED_AGENTS names ${named || '""'}, which does not exist`, {
      hints: ['reseed agent init writes agents.json in its --out directory'],
    });
  const own = named ?? join(homedir(), '.reseed', 'agents.json');
  const sandboxes = join(
    resolve(process.env.RESEED_SANDBOX_DIR ?? join(homedir(), '.reseed', 'sandboxes')),
    'agents.json',
  );
  return [own, sandboxes];
}

function readRegistry(file: string): Record<string, RegistryEntry> {
  if (!existsSync(file)) return {};
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(file, 'utf8'));
  } catch (err) {
    throw new ReseedError('CONFIG', `${file}: ${errorMessage(err)}`, { cause: err });
  }
  const parsed = registrySchema.safeParse(raw);
  if (!parsed.success)
    throw new ReseedError('CONFIG', `${file}: not an agents registry`, {
      hints: parsed.error.issues.map((i) => `${i.path.join('.')}: ${i.message}`),
    });
  const base = dirname(resolve(file));
  const abs = (p: string | undefined) => (p === undefined || isAbsolute(p) ? p : resolve(base, p));
  return Object.fromEntries(
    Object.entries(parsed.data.agents).map(([n, e]) => [
      n,
      { ...e, tokenFile: abs(e.tokenFile)!, ca: abs(e.ca), cert: abs(e.cert), key: abs(e.key) },
    ]),
  );
}

export function registryEntries(files = registryFiles()): Map<string, RegistryEntry> {
  const out = new Map<string, RegistryEntry>();
  // The first file that names an agent wins: the user's own registry before the sandboxes'.
  for (const f of files) for (const [n, e] of Object.entries(readRegistry(f))) if (!out.has(n)) out.set(n, e);
  return out;
}

/** `agent://NAME` (or NAME) to an address: URL, token, and TLS material, read now. */
export function resolveAgent(ref: string, files = registryFiles()): AgentAddress & { name: string } {
  const name = ref.replace(/^agent:\/\//, '').replace(/\/.*$/, '');
  const e = registryEntries(files).get(name);
  if (!e)
    throw new ReseedError('USAGE', `no agent named ${name} (looked in ${files.join(', ')})`, {
      hints: [
        'reseed agent init writes agents.json (set RESEED_AGENTS to it); reseed sandbox up NAME --agent registers a sandbox agent',
      ],
    });
  const read = (p: string | undefined) => (p === undefined ? undefined : readFileSync(p, 'utf8'));
  return {
    name,
    url: e.url,
    token: readTokenFile(e.tokenFile, `${name}.tokenFile`),
    ca: read(e.ca),
    cert: read(e.cert),
    key: read(e.key),
  };
}
