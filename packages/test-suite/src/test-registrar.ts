/**
 * What a test receives from the runner. vitest passes its test context, whose `skip()` marks a
 * test skipped when the storage lacks a capability; with a runner that passes nothing the test
 * simply returns and passes.
 */
export interface ContractTestContext {
  skip?: (note?: string) => void;
}

/**
 * Registers one test. vitest's (or jest's, or node:test's) `it` fits: the suite imports no test
 * runner itself.
 *
 * @example
 * import { it } from 'vitest';
 * const registrar: TestRegistrar = it;
 */
export type TestRegistrar = (
  name: string,
  fn: (context?: ContractTestContext) => Promise<void>,
  timeout?: number,
) => void;
