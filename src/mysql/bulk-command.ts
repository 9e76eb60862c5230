import type { Connection } from 'mysql2';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { valueLength } from './wire.js';

// mysql2 internals, reached by file path (its package exports do not list them). Two things
// mysql2 lacks: asking a MariaDB server for bulk operations at the handshake, and sending a
// prepared-statement command whose parameters the caller has already encoded.
const mysql2Lib = join(dirname(createRequire(import.meta.url).resolve('mysql2')), 'lib');
const requireLib = createRequire(join(mysql2Lib, 'index.js'));
type CommandClass = new () => {
  on(event: string, fn: (...args: unknown[]) => void): void;
  onResult?: (err: Error | null, result?: unknown) => void;
};
const Command = requireLib('./commands/command.js') as CommandClass;
const ClientHandshake = requireLib('./commands/client_handshake.js') as {
  prototype: Record<string, unknown>;
};
/** MARIADB_CLIENT_STMT_BULK_OPERATIONS, in the extended (upper 32 bits) capability word */
const MARIADB_BULK_OPERATIONS = 0x4;
for (const method of ['sendSSLRequest', 'sendCredentials']) {
  const original = ClientHandshake.prototype[method] as (this: HandshakeState, c: unknown) => unknown;
  ClientHandshake.prototype[method] = function (this: HandshakeState, connection: { reseedBulk?: boolean }) {
    // mysql2 leaves the extended word at 0 unless it negotiated MariaDB's extended metadata;
    // when it did, the server reads the word and bulk operations can be asked for too.
    if (
      this.mariadbExtendedClientFlags &&
      this.handshake.mariadbExtendedCapabilityFlags & MARIADB_BULK_OPERATIONS
    ) {
      this.mariadbExtendedClientFlags |= MARIADB_BULK_OPERATIONS;
      connection.reseedBulk = true;
    }
    return original.call(this, connection);
  };
}
interface HandshakeState {
  mariadbExtendedClientFlags: number;
  handshake: { mariadbExtendedCapabilityFlags: number };
}

/** The subset of mysql2's Connection internals this file reads. */
interface ConnectionInternals {
  addCommand(command: unknown): void;
  /** set at the handshake by the patch above */
  reseedBulk?: boolean;
}

function internals(connection: Connection): ConnectionInternals {
  return connection as unknown as ConnectionInternals;
}

/** True when the handshake of `connection` asked for MariaDB's bulk operations. */
export function bulkOperations(connection: Connection): boolean {
  return internals(connection).reseedBulk === true;
}

/** Queues `command` on `connection`, behind the commands already there. */
export function queueCommand(connection: Connection, command: RawCommand): void {
  internals(connection).addCommand(command);
}

/** A mysql2 command that writes one ready-made packet and reads an OK (or ERR) packet back. */
export class RawCommand extends Command {
  readonly #packet: Buffer;
  constructor(packet: Buffer, onResult: (err: Error | null, affected?: number) => void) {
    super();
    this.#packet = packet;
    this.onResult = onResult as (err: Error | null, result?: unknown) => void;
  }
  start(_packet: unknown, connection: { writePacket(p: unknown): void }): unknown {
    const buffer = this.#packet;
    connection.writePacket({
      buffer,
      length: () => buffer.length - 4,
      // Called for packets under 16 MB only: mysql2 frames larger ones itself.
      writeHeader(sequenceId: number) {
        buffer.writeUIntLE(buffer.length - 4, 0, 3);
        buffer[3] = sequenceId;
      },
    });
    return this.response;
  }
  /** `packet` is mysql2's internal Packet, of which this reads the bytes and where they start. */
  response(packet: { buffer: Buffer; offset: number }): null {
    // OK packet: 0x00, then the affected rows as a length-encoded integer.
    this.onResult!(null, valueLength(packet.buffer, packet.offset + 1));
    return null;
  }
}
