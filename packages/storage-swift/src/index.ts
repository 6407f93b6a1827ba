export { storageFromUrl } from './storage-from-url.ts';
export type { SwiftAuth, SwiftSession } from './swift-auth.ts';
export { SwiftStorage, type SwiftStorageOptions } from './swift-storage.ts';
