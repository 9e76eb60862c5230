import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jobError } from '../../src/agent/jobs.js';
import { ReseedError } from '../../src/errors.js';

/** What a job's record keeps of the error that ended it: the code and the hints that say what is left. */
describe('jobError', () => {
  it('keeps a ReseedError whole', () => {
    const e = jobError(
      new ReseedError('COPY_FAILED', 'the stream broke', { hints: ['every change was undone'] }),
    );
    assert.deepEqual(e, {
      code: 'COPY_FAILED',
      message: 'the stream broke',
      hints: ['every change was undone'],
    });
  });

  it("keeps a failed rollback's code and hints (an AggregateError): they say what was left behind", () => {
    const original = new ReseedError('INTERNAL', 'fault injected');
    const failed = Object.assign(new AggregateError([original], original.message), {
      code: 'JOURNAL',
      hints: ['1 undo step failed: destroy pool/reseed-data-1: dataset is busy'],
    });
    assert.deepEqual(jobError(failed), {
      code: 'JOURNAL',
      message: 'fault injected',
      hints: ['1 undo step failed: destroy pool/reseed-data-1: dataset is busy'],
    });
  });

  it('anything else is INTERNAL, with its message', () => {
    assert.deepEqual(jobError(new TypeError('x is undefined')), {
      code: 'INTERNAL',
      message: 'x is undefined',
      hints: [],
    });
  });
});
