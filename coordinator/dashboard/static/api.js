// The JSON API, called with the member's token. The token lives in this tab's sessionStorage only.

const TOKEN_KEY = "ipspace.dashboard.token";
let onUnauthorized = () => {};

export class ApiError extends Error {
  constructor(status, detail) {
    super(detail);
    this.status = status;
    this.detail = detail;
  }
}

export function storedToken() {
  return sessionStorage.getItem(TOKEN_KEY);
}

export function keepToken(token) {
  sessionStorage.setItem(TOKEN_KEY, token);
}

export function forgetToken() {
  sessionStorage.removeItem(TOKEN_KEY);
}

/** Called with the API's reason when a call answers 401 (the token expired or was refused). */
export function whenUnauthorized(handler) {
  onUnauthorized = handler;
}

/**
 * GET (or `method`) `path` with `params` (empty values left out); the parsed JSON answer.
 * Throws ApiError with the API's own reason when it refuses, or when the coordinator cannot be reached.
 */
export async function api(path, { method = "GET", params = {} } = {}) {
  const url = new URL(path, window.location.origin);
  for (const [name, value] of Object.entries(params)) {
    if (value !== "" && value !== null && value !== undefined) url.searchParams.set(name, String(value));
  }
  const token = storedToken();
  if (!token) throw new ApiError(401, "not signed in");
  let response;
  try {
    response = await fetch(url, {
      method,
      headers: { Authorization: `Bearer ${token}`, Accept: "application/json" },
      cache: "no-store",
      redirect: "error",
    });
  } catch (error) {
    throw new ApiError(0, `the coordinator could not be reached (${error.message})`);
  }
  const body = await response.json().catch(() => null);
  if (!response.ok) {
    const failure = new ApiError(response.status, reasonOf(response, body));
    if (response.status === 401) onUnauthorized(failure.detail);
    throw failure;
  }
  return body;
}

function reasonOf(response, body) {
  const detail = body && body.detail;
  if (typeof detail === "string") return detail;
  if (Array.isArray(detail)) {
    // FastAPI's 422: one item per bad field
    return detail.map((item) => `${(item.loc || []).slice(1).join(".")}: ${item.msg}`).join("; ");
  }
  return `the coordinator answered ${response.status} ${response.statusText}`.trim();
}
