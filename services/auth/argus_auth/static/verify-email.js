// Opened as .../auth/pages/verify-email#<token> from the verification mail: the token is in
// the fragment, which the browser never sends anywhere; it POSTs it to .../auth/verify-email.
"use strict";

const ENDPOINT = "../verify-email";
const status = document.getElementById("status");

async function post(body) {
  const response = await fetch(ENDPOINT, {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json"}, credentials: "omit", cache: "no-store"});
  const answer = await response.json().catch(() => ({}));
  return response.ok ? null : answer.detail || answer.title || `error ${response.status}`;
}

async function verify(token) {
  if (!token) {
    status.textContent = "This link has no token: open the whole link from the mail.";
    return;
  }
  try {
    const failure = await post({token});
    history.replaceState(null, "", location.pathname); // answered: the token leaves the bar
    status.textContent = failure === null
      ? "Your email address is verified. You can log in now."
      : `Not verified: ${failure}.`;
  } catch (error) {
    status.textContent = "Could not reach Argus; reload the page to try again.";
  }
}

verify(location.hash.slice(1));
