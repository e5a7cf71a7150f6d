"use strict";
// Sign in: the server checks the key and keeps it in an HttpOnly cookie (POST /ui/session),
// out of reach of any script on the page.
document.getElementById("login").addEventListener("submit", async (e) => {
  e.preventDefault();
  const key = document.getElementById("key").value.trim();
  const response = await fetch("/ui/session", {
    method: "POST",
    headers: {"Content-Type": "application/json"},
    body: JSON.stringify({key: key}),
    credentials: "same-origin",
  });
  if (response.ok) { location.reload(); return; }
  const body = await response.json().catch(() => ({}));
  const m = document.getElementById("message");
  m.textContent = "Sign-in refused (" + response.status + "): " + (body.detail || "error");
  m.className = "bad";
});
