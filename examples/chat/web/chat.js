// SPDX-License-Identifier: Apache-2.0
// The chat page: join a room (SUB /chat_messages), post to it
// (POST /send_message_to_chat_room), leave it (UNSUB), live state, reconnect.
import { XRaptor } from "./xraptor.js";

const $ = (id) => document.getElementById(id);
const url = (location.protocol === "https:" ? "wss://" : "ws://") + location.host + "/";
const xr = new XRaptor(url);
let sub = null;
let room = null;

$("name").value = "guest-" + Math.random().toString(36).slice(2, 6);

function show(origin, text, system = false) {
  const li = document.createElement("li");
  if (system) li.className = "system";
  else {
    const who = document.createElement("span");
    who.className = "origin";
    who.textContent = origin;
    li.append(who);
  }
  li.append(document.createTextNode(text));
  $("messages").append(li);
  li.scrollIntoView({ block: "end" });
}

function joined(on) {
  $("text").disabled = $("send-button").disabled = !on;
  $("leave-button").disabled = !on;
  $("join-button").disabled = on;
  $("room").disabled = on;
}

xr.on("state", (s) => {
  $("state").textContent = s;
  $("state").className = "state " + s;
  document.body.dataset.state = s;
});

$("join").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  room = $("room").value.trim();
  if (!room) return;
  sub = await xr.subscribe("/chat_messages", { chat_id: room }, (m) => show(m.origin, m.message));
  joined(true);
  show("", "joined " + room, true);
  document.body.dataset.joined = room;
});

$("leave-button").addEventListener("click", async () => {
  if (!sub) return;
  const answer = await sub.unsubscribe();
  show("", answer.message || "left", true);
  sub = null;
  joined(false);
  delete document.body.dataset.joined;
});

$("send").addEventListener("submit", async (ev) => {
  ev.preventDefault();
  const text = $("text").value;
  if (!text || !room) return;
  $("text").value = "";
  try {
    await xr.request("/send_message_to_chat_room", "POST",
                     { chat_id: room, client_id: $("name").value, message: text });
  } catch (e) {
    show("", "not sent: " + e.message, true);
  }
});

xr.connect().catch((e) => show("", e.message, true));
