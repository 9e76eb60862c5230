import { Agent, request } from 'undici';
import type { Dispatcher } from 'undici';
import { ReseedError, errorMessage } from '../errors.js';
import type { ErrorCode } from '../errors.js';
import type { JobEvent } from './jobs.js';

/** How to reach an agent: its URL, its API token, and the TLS material to check it (and show ours). */
export interface AgentAddress {
  url: string;
  token: string;
  ca?: string | undefined;
  cert?: string | undefined;
  key?: string | undefined;
}

/**
 * A client of one agent's API (the CLI's, and an agent's of its peers). Errors come back as the
 * agent sent them: its stable code, message and hints; a connection that fails is CONNECT_FAILED.
 */
export class AgentClient {
  readonly #dispatcher: Dispatcher;
  readonly #base: URL;
  readonly #token: string;

  constructor(readonly address: AgentAddress) {
    this.#base = new URL(address.url);
    this.#token = address.token;
    this.#dispatcher = new Agent({
      connect: { ca: address.ca, cert: address.cert, key: address.key, rejectUnauthorized: true },
    });
  }

  async call<T>(
    method: 'GET' | 'POST' | 'DELETE',
    path: string,
    body?: unknown,
    signal?: AbortSignal,
  ): Promise<T> {
    let res: Dispatcher.ResponseData;
    try {
      res = await request(new URL(path, this.#base), {
        method,
        dispatcher: this.#dispatcher,
        headers: {
          authorization: `Bearer ${this.#token}`,
          ...(body === undefined ? {} : { 'content-type': 'application/json' }),
        },
        body: body === undefined ? undefined : JSON.stringify(body),
        signal,
        headersTimeout: 30_000,
        bodyTimeout: 30_000,
      });
    } catch (err) {
      throw unreachable(this.address, err);
    }
    const text = await res.body.text();
    if (res.statusCode >= 200 && res.statusCode < 300) return (text ? JSON.parse(text) : undefined) as T;
    throw agentError(res.statusCode, text, this.address.url);
  }

  /** A job's events (server-sent), from `after` on, until the job is final or `signal` aborts. */
  async *events(jobId: string, after = 0, signal?: AbortSignal): AsyncGenerator<JobEvent> {
    const res = await request(
      new URL(`/v1/jobs/${encodeURIComponent(jobId)}/events?after=${after}`, this.#base),
      {
        method: 'GET',
        dispatcher: this.#dispatcher,
        headers: { authorization: `Bearer ${this.#token}`, accept: 'text/event-stream' },
        signal,
        bodyTimeout: 0,
      },
    ).catch((err: unknown) => {
      throw unreachable(this.address, err);
    });
    if (res.statusCode !== 200) throw agentError(res.statusCode, await res.body.text(), this.address.url);
    let buffered = '';
    for await (const chunk of res.body) {
      buffered += String(chunk);
      let cut: number;
      while ((cut = buffered.indexOf('\n\n')) >= 0) {
        const block = buffered.slice(0, cut);
        buffered = buffered.slice(cut + 2);
        const data = block
          .split('\n')
          .filter((l) => l.startsWith('data: '))
          .map((l) => l.slice(6))
          .join('\n');
        if (data) yield JSON.parse(data) as JobEvent;
      }
    }
  }

  async close(): Promise<void> {
    await this.#dispatcher.close();
  }
}

function agentError(status: number, text: string, url: string): ReseedError {
  let parsed: { code?: string; message?: string; hints?: string[] } = {};
  try {
    parsed = JSON.parse(text) as typeof parsed;
  } catch {
    parsed = { message: text.slice(0, 200) };
  }
  const code = (parsed.code ?? (status === 401 ? 'TRANSPORT_AUTH_FAILED' : 'AGENT')) as ErrorCode;
  return new ReseedError(code, `agent ${url}: ${parsed.message ?? `HTTP ${status}`}`, {
    hints: parsed.hints ?? [],
  });
}

/** A connection that failed, with what usually causes it. */
function unreachable(address: AgentAddress, err: unknown): ReseedError {
  const hints = [`is the agent running there, and is ${address.url} its address (agents.json)?`];
  if (!address.cert)
    hints.push(
      'agents set up by `reseed agent init` require a client certificate: agents.json names it (cert, key)',
    );
  if (address.url.startsWith('http:'))
    hints.push('agents listen with TLS unless insecurePlainHttp: use https://');
  return new ReseedError('CONNECT_FAILED', `cannot reach the agent at ${address.url}: ${errorMessage(err)}`, {
    cause: err,
    hints,
  });
}
