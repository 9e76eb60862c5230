import { connect as netConnect } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';
import { ReseedError, abortError, errorMessage } from '../errors.js';
import { run } from '../exec/run.js';
import { getSandbox, sandboxDown, sandboxUp } from '../sandbox/sandbox.js';

/** Where a mysqld listens, to tell when it is ready: a TCP address or a unix socket. */
export type ListenAddress = { host: string; port: number } | { socketPath: string };

/**
 * How a host's mysqld is stopped and started. Plain JSON without secrets, so a journal can keep
 * it and whoever replays the journal (recover, an agent at its next start) can rebuild it.
 */
export type ServiceSpec =
  | { kind: 'sandbox'; name: string }
  | { kind: 'systemd'; unit: string; listen: ListenAddress }
  | {
      kind: 'commands';
      /** shell commands, run by /bin/sh -c; they must return once the action is done or under way */
      start: string;
      stop: string;
      /** exit 0 while mysqld runs; without it, "running" means the listen address answers */
      status?: string | undefined;
      listen: ListenAddress;
    };

export interface ServiceStatus {
  running: boolean;
  /** the server's PID where the service manager knows it */
  pid: number | undefined;
  /** one line in the manager's words: "active (running)", "stopped", "exit 3" */
  detail: string;
}

export interface ServiceControl {
  readonly spec: ServiceSpec;
  /** for messages: "sandbox demo-joiner", "systemd unit mariadb.service" */
  readonly description: string;
  status(signal?: AbortSignal): Promise<ServiceStatus>;
  /** returns once mysqld has exited */
  stop(signal?: AbortSignal): Promise<void>;
  /**
   * returns once mysqld accepts connections (its handshake is read), or fails within the timeout.
   * `skipReplicaStart`: its replication threads are not started (--skip-slave-start): a replica
   * that was stopped stays stopped (sandbox: an argument; systemd: MYSQLD_OPTS, which Debian's
   * mariadb.service passes; commands: RESEED_SKIP_REPLICA_START=1 in the start command's
   * environment, for it to honour)
   */
  start(signal?: AbortSignal, o?: { skipReplicaStart?: boolean }): Promise<void>;
}

const UNIT_RE = /^[A-Za-z0-9:_.\\@-]{1,250}$/;
/** How long a started server may take to answer (InnoDB crash recovery of a big log can be slow). */
const READY_TIMEOUT_MS = Number(process.env.RESEED_SERVICE_READY_TIMEOUT_MS ?? 600_000);
const STOP_TIMEOUT_MS = Number(process.env.RESEED_SERVICE_STOP_TIMEOUT_MS ?? 600_000);

export function describeService(spec: ServiceSpec): string {
  switch (spec.kind) {
    case 'sandbox':
      return `sandbox ${spec.name}`;
    case 'systemd':
      return `systemd unit ${spec.unit}`;
    case 'commands':
      return `mysqld (start: ${spec.start}; stop: ${spec.stop})`;
  }
}

/** A systemd unit name as `systemctl` takes it: "mariadb" becomes "mariadb.service". */
export function normalizeUnit(unit: string): string {
  const u = unit.trim();
  if (!UNIT_RE.test(u) || u.startsWith('-'))
    throw new ReseedError('CONFIG', `"${unit}" is not a systemd unit name (e.g. mariadb.service)`);
  return /\.[a-z]+$/.test(u) ? u : `${u}.service`;
}

export function serviceControl(spec: ServiceSpec): ServiceControl {
  switch (spec.kind) {
    case 'sandbox':
      return sandboxService(spec);
    case 'systemd':
      return systemdService({ ...spec, unit: normalizeUnit(spec.unit) });
    case 'commands':
      return commandService(spec);
  }
}

function sandboxService(spec: Extract<ServiceSpec, { kind: 'sandbox' }>): ServiceControl {
  const known = () => {
    const s = getSandbox(spec.name);
    if (!s) throw new ReseedError('CONFIG', `no sandbox named ${spec.name} (see: reseed sandbox list)`);
    return s;
  };
  return {
    spec,
    description: describeService(spec),
    status: async () => {
      const s = known();
      return { running: s.running, pid: s.pid, detail: s.running ? 'running' : 'stopped' };
    },
    stop: async () => {
      known();
      await sandboxDown(spec.name);
    },
    start: async (signal, o) => {
      known();
      await sandboxUp(spec.name, {
        signal,
        ...(o?.skipReplicaStart ? { serverArgs: ['--skip-slave-start'] } : {}),
      });
    },
  };
}

/**
 * systemd: `systemctl start` returns when the unit is started (Debian's mariadb.service is
 * Type=notify, so that is when the server is ready), `stop` when it has stopped; the listen
 * address is read as well, since other units are of simpler types.
 */
function systemdService(spec: Extract<ServiceSpec, { kind: 'systemd' }>): ServiceControl {
  const systemctl = (args: string[], signal?: AbortSignal) =>
    run(process.env.RESEED_SYSTEMCTL ?? 'systemctl', args, signal ? { signal } : {});
  const status = async (signal?: AbortSignal): Promise<ServiceStatus> => {
    const { stdout } = await systemctl(
      ['show', spec.unit, '--property=LoadState,ActiveState,SubState,MainPID'],
      signal,
    );
    const p = Object.fromEntries(
      stdout
        .trim()
        .split('\n')
        .map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]),
    ) as Record<string, string | undefined>;
    if (p.LoadState === 'not-found')
      throw new ReseedError('CONFIG', `systemd has no unit ${spec.unit} (systemctl show says not-found)`);
    const pid = Number(p.MainPID ?? 0);
    return {
      running: p.ActiveState === 'active' || p.ActiveState === 'reloading',
      pid: pid > 0 ? pid : undefined,
      detail: `${p.ActiveState ?? '?'} (${p.SubState ?? '?'})`,
    };
  };
  return {
    spec,
    description: describeService(spec),
    status,
    stop: async (signal) => {
      await systemctl(['stop', spec.unit], signal);
      const s = await status(signal);
      if (s.running)
        throw new ReseedError('EXEC_FAILED', `${spec.unit} is still ${s.detail} after systemctl stop`);
    },
    start: async (signal, o) => {
      if (o?.skipReplicaStart) await systemctl(['set-environment', 'MYSQLD_OPTS=--skip-slave-start'], signal);
      try {
        await systemctl(['start', spec.unit], signal);
      } finally {
        if (o?.skipReplicaStart) await systemctl(['unset-environment', 'MYSQLD_OPTS']).catch(() => undefined);
      }
      await waitUntilReady(spec.listen, `${spec.unit}`, signal);
    },
  };
}

function commandService(spec: Extract<ServiceSpec, { kind: 'commands' }>): ServiceControl {
  const sh = (command: string, signal?: AbortSignal, env: Record<string, string> = {}) =>
    run('/bin/sh', ['-c', command], { env: { ...process.env, ...env }, ...(signal ? { signal } : {}) });
  const status = async (signal?: AbortSignal): Promise<ServiceStatus> => {
    if (spec.status === undefined) {
      const up = await answers(spec.listen);
      return { running: up, pid: undefined, detail: up ? 'answering' : 'not answering' };
    }
    try {
      await sh(spec.status, signal);
      return { running: true, pid: undefined, detail: 'status command exit 0' };
    } catch (err) {
      if (signal?.aborted) throw abortError(signal);
      return { running: false, pid: undefined, detail: `status command failed: ${errorMessage(err)}` };
    }
  };
  return {
    spec,
    description: describeService(spec),
    status,
    stop: async (signal) => {
      await sh(spec.stop, signal);
      const deadline = Date.now() + STOP_TIMEOUT_MS;
      while ((await status(signal)).running) {
        if (Date.now() > deadline)
          throw new ReseedError(
            'EXEC_FAILED',
            `mysqld still runs ${STOP_TIMEOUT_MS / 1000} s after: ${spec.stop}`,
          );
        if (signal?.aborted) throw abortError(signal);
        await sleep(200);
      }
    },
    start: async (signal, o) => {
      await sh(spec.start, signal, o?.skipReplicaStart ? { RESEED_SKIP_REPLICA_START: '1' } : {});
      await waitUntilReady(spec.listen, 'mysqld', signal);
    },
  };
}

function describeAddress(a: ListenAddress): string {
  return 'socketPath' in a ? a.socketPath : `${a.host}:${a.port}`;
}

/**
 * Whether a server at the address sends a MySQL handshake (or an error packet, such as "too many
 * connections": the server is up either way). No credentials are needed: mysqld opens its port
 * only once its storage engines, crash recovery included, are ready.
 */
export function answers(address: ListenAddress, timeoutMs = 2000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = netConnect('socketPath' in address ? { path: address.socketPath } : address);
    const finish = (up: boolean) => {
      socket.destroy();
      resolve(up);
    };
    socket.setTimeout(timeoutMs, () => finish(false));
    socket.once('error', () => finish(false));
    let got = Buffer.alloc(0);
    socket.on('data', (d: Buffer) => {
      got = Buffer.concat([got, d]);
      // 3-byte length, sequence id, then 10 (protocol version) or 0xff (an error packet).
      if (got.length >= 5) finish(got[4] === 10 || got[4] === 0xff);
    });
    socket.once('end', () => finish(false));
  });
}

export async function waitUntilReady(
  address: ListenAddress,
  what: string,
  signal?: AbortSignal,
): Promise<void> {
  const deadline = Date.now() + READY_TIMEOUT_MS;
  while (!(await answers(address))) {
    if (signal?.aborted) throw abortError(signal);
    if (Date.now() > deadline)
      throw new ReseedError(
        'EXEC_FAILED',
        `${what} was started but does not answer on ${describeAddress(address)} after ${READY_TIMEOUT_MS / 1000} s`,
        { hints: ["check the server's error log"] },
      );
    await sleep(200);
  }
}
