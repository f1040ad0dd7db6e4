export { useActivityLogout } from "./useActivityLogout.js";
export type { UseActivityLogoutOptions, ActivityLogoutState } from "./useActivityLogout.js";
export { useRefreshToken } from "./useRefreshToken.js";
export type { UseRefreshTokenOptions, RefreshTokenState } from "./useRefreshToken.js";
export { loadClient, clientUrl } from "./loadClient.js";
export type { AuthgateClient, ActivityLogoutOptions, ActivityLogoutHandle, RefreshResult } from "./types.js";
