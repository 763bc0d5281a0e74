// Opened as .../auth/pages/reset-password#<token> from the reset mail (a fragment is never
// sent anywhere): the form POSTs the token and the new password to .../auth/password/reset.
"use strict";

const ENDPOINT = "../password/reset";
const token = location.hash.slice(1);
history.replaceState(null, "", location.pathname); // kept here only; out of the address bar
const form = document.getElementById("reset");
const status = document.getElementById("status");

async function post(body) {
  const response = await fetch(ENDPOINT, {method: "POST", body: JSON.stringify(body),
    headers: {"Content-Type": "application/json"}, credentials: "omit", cache: "no-store"});
  const answer = await response.json().catch(() => ({}));
  return response.ok ? null : answer.detail || answer.title || `error ${response.status}`;
}

async function reset(password) {
  try {
    const failure = await post({token, new_password: password});
    form.hidden = failure === null;
    status.textContent = failure === null
      ? "Your password is reset and every session ended. Log in with the new password."
      : `Not reset: ${failure}.`;
  } catch (error) {
    status.textContent = "Could not reach Argus; try again.";
  }
}

form.addEventListener("submit", async (event) => {
  event.preventDefault();
  const [password, again] = [form.elements.password.value, form.elements.again.value];
  if (!token) {
    status.textContent = "This link has no token: open the whole link from the mail.";
  } else if (password !== again) {
    status.textContent = "The two passwords differ; type the same one twice.";
  } else {
    form.querySelector("button").disabled = true; // one submit at a time
    await reset(password);
    form.querySelector("button").disabled = false;
  }
});
