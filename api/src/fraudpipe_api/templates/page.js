"use strict";
// The analyst page: feedback with the write key as a bearer header, live rows every 5 s.
const analyst = document.getElementById("analyst"), key = document.getElementById("key");
analyst.value = localStorage.getItem("fraudpipe.analyst") || "";
key.value = sessionStorage.getItem("fraudpipe.key") || "";
analyst.addEventListener("change", () => localStorage.setItem("fraudpipe.analyst", analyst.value));
key.addEventListener("change", () => sessionStorage.setItem("fraudpipe.key", key.value));
const message = (text, bad) => {
  const m = document.getElementById("message"); m.textContent = text; m.className = bad ? "bad" : "";
};
document.getElementById("alerts").addEventListener("click", async (e) => {
  const button = e.target.closest("button[data-label]");
  if (!button) return;
  const row = button.closest("tr"), tx = row.dataset.tx, label = button.dataset.label;
  if (!analyst.value.trim()) { message("Enter your name (analyst) first.", true); analyst.focus(); return; }
  const response = await fetch("/v1/alerts/" + encodeURIComponent(tx) + "/feedback", {
    method: "POST",
    headers: {"Content-Type": "application/json", "Authorization": "Bearer " + key.value.trim()},
    body: JSON.stringify({label: label, analyst: analyst.value.trim()}),
  });
  const body = await response.json().catch(() => ({}));
  if (response.ok) { row.querySelector(".label").textContent = label; message(tx + " marked " + label + "."); }
  else { message("Feedback refused (" + response.status + "): " + (body.detail || "error"), true); }
});
async function refresh() {
  const response = await fetch("/ui/alerts" + location.search, {credentials: "same-origin"});
  if (response.ok) {
    document.getElementById("alerts").innerHTML = await response.text();
    document.getElementById("status").textContent = "updated " + new Date().toISOString().slice(11, 19) + " UTC";
  }
}
setInterval(refresh, 5000);
