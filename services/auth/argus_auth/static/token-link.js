// Opened as .../auth/pages/<page>#<token> from a mail (verification, email change): the token
// is in the fragment, which the browser never sends anywhere. The page's <main> says where the
// token goes (data-endpoint) and what to tell the user (data-done, data-failed).
"use strict";

const page = document.querySelector("main").dataset;
const status = document.getElementById("status");

async function post(body) {
  const response = await fetch(page.endpoint, {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json"}, credentials: "omit", cache: "no-store"});
  const answer = await response.json().catch(() => ({}));
  return response.ok ? null : answer.detail || answer.title || `error ${response.status}`;
}

async function send(token) {
  if (!token) {
    status.textContent = "This link has no token: open the whole link from the mail.";
    return;
  }
  try {
    const failure = await post({token});
    history.replaceState(null, "", location.pathname); // answered: the token leaves the bar
    status.textContent = failure === null ? page.done : `${page.failed}: ${failure}.`;
  } catch (error) {
    status.textContent = "Could not reach Argus; reload the page to try again.";
  }
}

send(location.hash.slice(1));
