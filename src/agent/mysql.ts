import { ReseedError } from '../errors.js';
import type { Endpoint } from '../mysql/credentials.js';
import { resolveEndpoint } from '../mysql/credentials.js';
import type { AgentConfig } from './config.js';

/**
 * How this agent logs in to its host's mysqld: `mysql.uri`, with the password from
 * `mysql.defaultsFile` (the agent's environment is not read: a password in an agent's
 * environment would be in /proc for anyone who can read it).
 */
export function agentEndpoint(config: AgentConfig): Endpoint {
  if (!config.mysql)
    throw new ReseedError(
      'CONFIG',
      `agent ${config.name} has no mysql key: it does not know its host's mysqld`,
      {
        hints: [
          'add "mysql": {"uri": "mysql://USER@HOST:PORT", "defaultsFile": "FILE"} to its configuration',
        ],
      },
    );
  return resolveEndpoint(config.mysql.uri, {
    side: 'joiner',
    sideDefaultsFile: config.mysql.defaultsFile,
    env: {},
  }).endpoint;
}

/** An option file's value, quoted as the MySQL clients read it. */
export function optionValue(value: string): string {
  return `"${value.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;
}

/** `[client]` lines for a tool that reads option files (mariadb-backup): no password on its argv. */
export function clientOptionFile(e: Endpoint): string {
  return [
    '[client]',
    `user=${optionValue(e.user)}`,
    ...(e.password !== undefined ? [`password=${optionValue(e.password)}`] : []),
    ...(e.socketPath
      ? [`socket=${optionValue(e.socketPath)}`]
      : [`host=${optionValue(e.host)}`, `port=${e.port}`]),
    '',
  ].join('\n');
}
