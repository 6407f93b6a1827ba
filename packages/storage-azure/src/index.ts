export { AzureStorage, type AzureStorageOptions, type TokenCredentialLike } from './azure-storage.ts';
export { storageFromUrl } from './storage-from-url.ts';
