export { claimedVersion } from './claimed-version.ts';
export {
  type ComponentFixture,
  type ComponentRoundTripOptions,
  componentRoundTrip,
} from './component-round-trip.ts';
export { type FaultPlan, FaultyStorage, type StorageCall, type StorageMethod } from './faulty-storage.ts';
export { recordedEntries } from './recorded-entries.ts';
export { type StorageContractOptions, type StorageFactory, storageContract } from './storage-contract.ts';
export type { ContractTestContext, TestRegistrar } from './test-registrar.ts';
