export { type StorageContractOptions, type StorageFactory, storageContract } from './storage-contract.ts';
export { type ComponentFixture, type ComponentRoundTripOptions, componentRoundTrip } from './component-round-trip.ts';
export { type FaultPlan, FaultyStorage } from './faulty-storage.ts';
