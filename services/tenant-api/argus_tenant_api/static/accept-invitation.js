// Opened as .../tenant/pages/accept-invitation#<token> from the invitation mail (a fragment is
// never sent anywhere). Accepting needs the invitee signed in: the form signs in through auth
// (<main data-login>, beside tenant-api behind the gateway), accepts with the access token of
// that answer (<main data-endpoint>), then ends that session (<main data-logout>). An account
// with MFA gets a challenge this page does not answer: it says to accept through the API.
"use strict";

const page = document.querySelector("main").dataset;
const token = location.hash.slice(1);
history.replaceState(null, "", location.pathname); // kept here only; out of the address bar
const form = document.getElementById("login");
const status = document.getElementById("status");
const MFA = "This account signs in with a second factor, which this page does not ask for. " +
  "Sign in through the API (POST /auth/login, then POST /auth/login/mfa) and send the token " +
  "from the mail to POST /tenant/invitations/accept with that access token.";

async function post(endpoint, body, accessToken) {
  const headers = body === undefined ? {} : {"Content-Type": "application/json"};
  if (accessToken) headers.Authorization = `Bearer ${accessToken}`;
  const response = await fetch(endpoint, {method: "POST", headers, credentials: "omit",
    cache: "no-store", body: body === undefined ? undefined : JSON.stringify(body)});
  const answer = await response.json().catch(() => ({}));
  const failure = answer.detail || answer.title || `error ${response.status}`;
  return {ok: response.ok, answer, failure};
}

async function accept(email, password) {
  const login = await post(page.login, {email, password});
  if (!login.ok) return {done: false, text: `Not signed in: ${login.failure}.`};
  if (login.answer.mfa_required) return {done: false, text: MFA};
  const access = login.answer.access_token;
  const accepted = await post(page.endpoint, {token}, access);
  await post(page.logout, undefined, access).catch(() => null); // the page keeps no session
  return accepted.ok
    ? {done: true, text: `You joined the org as ${accepted.answer.role}. Switch to it when ` +
        "you sign in (POST /auth/orgs/switch)."}
    : {done: false, text: `Not accepted: ${accepted.failure}.`};
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  if (!token) {
    status.textContent = "This link has no token: open the whole link from the mail.";
    return;
  }
  const button = form.querySelector("button");
  button.disabled = true; // one submit at a time
  try {
    const result = await accept(form.elements.email.value, form.elements.password.value);
    form.hidden = result.done;
    status.textContent = result.text;
  } catch (error) {
    status.textContent = "Could not reach Argus; try again.";
  }
  button.disabled = false;
});
