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

// Who is in the room, when the server keeps presence (--presence).
const members = new Map();
function showMembers() {
  const ul = $("members");
  ul.replaceChildren(...[...members.keys()].sort().map((u) => {
    const li = document.createElement("li");
    li.textContent = u;
    return li;
  }));
  ul.hidden = members.size === 0;
}

function onPresence(event, { user }) {
  if (event === "join") members.set(user, true);
  else members.delete(user);
  showMembers();
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
  sub = await xr.subscribe("/chat_messages", { chat_id: room, client_id: $("name").value },
                           (m) => show(m.origin, m.message), {}, { onPresence });
  joined(true);
  show("", "joined " + room, true);
  document.body.dataset.joined = room;
  // Those already there (a server without presence says no: no list).
  try {
    const now = await xr.presence(room);
    for (const m of now.members) members.set(m.user, true);
    showMembers();
  } catch { /* no presence on this server */ }
});

$("leave-button").addEventListener("click", async () => {
  if (!sub) return;
  const answer = await sub.unsubscribe();
  show("", answer.message || "left", true);
  sub = null;
  members.clear();
  showMembers();
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
