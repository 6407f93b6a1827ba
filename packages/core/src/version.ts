/** The version of `@bk/core`, recorded in every manifest. Kept in step by the release script. */
export const BK_VERSION = '0.1.0';
