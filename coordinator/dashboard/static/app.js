// Sign-in and the choice of view. The member's token is asked for here and kept in sessionStorage only;
// GET /me says who it belongs to, and so which view to show.

import { api, forgetToken, keepToken, storedToken, whenUnauthorized } from "./api.js";
import { startBuilder, stopBuilder } from "./builder.js";
import { byId, showProblem } from "./dom.js";
import { startRegulator, stopRegulator } from "./regulator.js";

const VIEWS = {
  regulator: { element: "regulator-view", start: startRegulator, stop: stopRegulator },
  builder: { element: "builder-view", start: startBuilder, stop: stopBuilder },
};

let current = null;

function showLogin(reason) {
  if (current) current.stop();
  current = null;
  for (const view of Object.values(VIEWS)) byId(view.element).hidden = true;
  byId("no-view").hidden = true;
  byId("who").hidden = true;
  byId("login").hidden = false;
  byId("login-form").reset();
  showProblem(byId("login-error"), reason);
  document.title = "ipspace · sign in";
}

async function enter() {
  let me;
  try {
    me = await api("/me");
  } catch (error) {
    forgetToken();
    const reason = error.detail || String(error);
    showLogin(error.status === 401 ? `The coordinator refused this token: ${reason}` : reason);
    return;
  }
  byId("login").hidden = true;
  showProblem(byId("login-error"), "");
  byId("who-name").textContent = `${me.name} · ${me.org} · ${me.role}`;
  byId("who").hidden = false;
  document.title = `ipspace · ${me.role} dashboard`;
  const view = VIEWS[me.role];
  if (!view) {
    byId("no-view-text").textContent =
      `This dashboard has views for regulators and model builders; ${me.name} of ${me.org} holds the role ` +
      `${me.role}. Use the ipspace command line for what that role does.`;
    byId("no-view").hidden = false;
    return;
  }
  current = view;
  byId(view.element).hidden = false;
  await view.start();
}

async function tokenFromForm() {
  const pasted = byId("token").value.trim();
  if (pasted) return pasted;
  const [file] = byId("token-file").files;
  return file ? (await file.text()).trim() : "";
}

async function signIn(event) {
  event.preventDefault();
  const button = byId("sign-in");
  button.disabled = true;
  try {
    const token = await tokenFromForm();
    if (!token) {
      showProblem(byId("login-error"), "Paste your token, or pick your token file.");
      return;
    }
    keepToken(token);
    await enter();
  } finally {
    button.disabled = false;
  }
}

function signOut() {
  forgetToken();
  showLogin("");
}

whenUnauthorized((reason) => {
  // The token ran out (or was refused) in the middle of a session: back to sign-in, saying why.
  if (current) {
    forgetToken();
    showLogin(`Signed out: the coordinator refused the token (${reason}).`);
  }
});
byId("login-form").addEventListener("submit", signIn);
byId("sign-out").addEventListener("click", signOut);
if (storedToken()) enter();
else showLogin("");
