import { ReseedError } from '../errors.js';
import type { TransferMethod } from './method.js';
import { logical } from './logical/index.js';

/** The methods reseed offers, by the name the joiner asks for. */
export const METHODS: ReadonlyMap<string, TransferMethod> = new Map([[logical.name, logical]]);

export function getMethod(name: string): TransferMethod {
  const m = METHODS.get(name);
  if (!m) {
    throw new ReseedError('USAGE', `unknown method "${name}" (available: ${[...METHODS.keys()].join(', ')})`);
  }
  return m;
}
