/**
 * bench/peer — ours beside a plain grammY bot on @grammyjs/runner (bench/support/peer-bots.ts),
 * in one run through the same world: the Bot API emulator (telegram-test-api) behind the proxy
 * with Telegram's getUpdates offset rule (test/support/conflict-proxy.ts), the users, and an
 * OpenAI-compatible model, in processes of their own (bench/world.ts). Each bot runs in its own
 * process, both started at once; every load goes to one bot while the other is paused
 * (SIGSTOP), with the same load for both. Prints figures; asserts nothing.
 *
 *   npm run bench:peer [-- --messages 1000 --chats 200 --latency 500 --concurrency 32 --hang 8000]
 *   BENCH_CPU_PROF=/tmp/prof npm run bench:peer      # also a CPU profile of each bot process (node --cpu-prof)
 *   BENCH_ONLY=bots npm run bench:peer                # ours alone: to compare changes (no ratios)
 *
 * 1. Wall time (first send → last reply) of N messages over C chats, model latency L, against
 *    the limit N / concurrency × L.
 * 1b. The first model call after the load started (how soon answering starts while the burst is recorded).
 * 2. p90 latency (user send → reply in the emulator) of 100 messages from other chats while one
 *    chat's model call hangs `hang` ms.
 * 3. CPU per message: the bot process's user + system time (process.cpuUsage) over N messages
 *    with an instant model, divided by N; the median of nine rounds (`BENCH_ROUNDS`), each printed
 *    too, with its system (kernel) part. The bots' rounds alternate (peer, ours, then ours, peer,
 *    …), so a machine that slows down or speeds up during the run weighs on both alike; the ratio
 *    of each such pair of rounds is printed too, with its median.
 */
import { type ChildProcess, fork } from "node:child_process";
import { once } from "node:events";
import { loadOptions } from "./support/project.js";

const { messages: N, chats: C, latency: LAT, concurrency: CONC, hang: HANG } = loadOptions();
const TOKENS = { bots: "123456:BENCH-ours", grammy: "234567:BENCH-peer" } as const;
/** Rounds of the CPU figure (N messages each); the median is printed with each round's figure. */
const CPU_ROUNDS = Number(process.env.BENCH_ROUNDS ?? 9);
/** `bots`: measure ours alone (the peer's columns and the ratios are not printed). */
const ONLY_OURS = process.env.BENCH_ONLY === "bots";

const spawn = (file: string, env: Record<string, string>) =>
  fork(new URL(file, import.meta.url), [], {
    execArgv: [
      ...(process.env.BENCH_CPU_PROF && file.includes("peer-bots") ? ["--cpu-prof", `--cpu-prof-dir=${process.env.BENCH_CPU_PROF}`] : []),
      "--import",
      "tsx",
    ],
    env: { ...process.env, ...env },
  });
const ask = async <T>(to: ChildProcess, msg?: unknown): Promise<T> => {
  const reply = once(to, "message");
  if (msg) to.send(msg as never);
  return ((await reply) as [T])[0];
};

const world = spawn("./world.ts", { BENCH_ROLE: "telegram", BENCH_TOKEN: TOKENS.bots, BENCH_PROXY: "1" });
const model = spawn("./world.ts", { BENCH_ROLE: "model", BENCH_TOKEN: TOKENS.bots, BENCH_LATENCY: String(LAT) });
const { apiRoot } = await ask<{ apiRoot: string }>(world);
const { llmUrl } = await ask<{ llmUrl: string }>(model);

interface Figures {
  wallMs: number;
  /** From the load's start to the model server's first request, ms. */
  firstCallMs: number;
  hangP90: number;
  hangN: number;
  /** Median of {@link cpuRounds}. */
  cpuMs: number;
  /** CPU per message of each round with an instant model, ms. */
  cpuRounds: number[];
  /** Of each round's figure, the part spent in the kernel (system time), ms. */
  systemRounds: number[];
}

type Kind = keyof typeof TOKENS;
type Cpu = { userMs: number; systemMs: number };

/** Starts one bot's process and waits until it polls. */
async function startBot(kind: Kind): Promise<ChildProcess> {
  const bot = spawn("./support/peer-bots.ts", {
    BENCH_BOT: kind,
    BENCH_TOKEN: TOKENS[kind],
    BENCH_API_ROOT: apiRoot,
    BENCH_LLM_URL: llmUrl,
    BENCH_CONCURRENCY: String(CONC),
  });
  await ask(bot);
  return bot;
}

/** Figures 1, 1b and 2 of one bot, alone under load (the other bot is paused meanwhile). */
async function measureLoad(kind: Kind): Promise<Pick<Figures, "wallMs" | "firstCallMs" | "hangP90" | "hangN">> {
  const step = (s: string) => process.env.BENCH_DEBUG && console.error(`${kind}: ${s}`);
  const token = TOKENS[kind];
  await ask(model, { cmd: "latency", latencyMs: LAT });
  await ask(model, { cmd: "mark" });
  const t0 = Date.now();
  const load = await ask<{ wallMs: number }>(world, { cmd: "load", n: N, chats: C, token });
  const { at } = await ask<{ at: number[] }>(model, { cmd: "arrivals" });
  step("loaded");
  model.send({ cmd: "hang", hangMs: HANG, latencyMs: LAT });
  // The hung call's late answer too, before the next phase counts replies.
  const hang = await ask<{ p90: number; n: number }>(world, { cmd: "hang", others: 100, hangMs: HANG, latencyMs: LAT, token, andHung: true });
  step("hang");
  return { wallMs: load.wallMs, firstCallMs: Math.min(...at) - t0, hangP90: hang.p90, hangN: hang.n };
}

/** One CPU round of one bot: N messages with an instant model; its CPU and system time per message, ms. */
async function cpuRound(kind: Kind, bot: ChildProcess, r: number): Promise<{ cpu: number; system: number }> {
  const before = await ask<Cpu>(bot, { cmd: "cpu" });
  await ask(world, { cmd: "load", n: N, chats: C, token: TOKENS[kind], tag: `cpu${r} ` });
  const after = await ask<Cpu>(bot, { cmd: "cpu" });
  return { cpu: (after.userMs + after.systemMs - before.userMs - before.systemMs) / N, system: (after.systemMs - before.systemMs) / N };
}

// Both bots run side by side, each in its own process. A load goes to one bot while the other is
// paused (SIGSTOP: the plain bot polls every 5 ms when idle, which would take the machine's time
// from the one measured). The CPU rounds alternate between the bots (the order swapped every
// round), so a change of the machine's speed during the run weighs on both alike.
const kinds: Kind[] = ONLY_OURS ? ["bots"] : ["grammy", "bots"];
const bots = new Map<Kind, ChildProcess>();
// A bench that fails halfway leaves no paused process behind.
process.on("exit", () => {
  for (const bot of bots.values()) {
    bot.kill("SIGCONT");
    bot.kill();
  }
});
for (const kind of kinds) {
  bots.set(kind, await startBot(kind));
  bots.get(kind)!.kill("SIGSTOP");
}
/** Resumes `kind`'s process and pauses the others. */
const only = (kind: Kind) => {
  for (const [k, bot] of bots) bot.kill(k === kind ? "SIGCONT" : "SIGSTOP");
};
const loads = new Map<Kind, Awaited<ReturnType<typeof measureLoad>>>();
for (const kind of kinds) {
  only(kind);
  loads.set(kind, await measureLoad(kind));
}
await ask(model, { cmd: "latency", latencyMs: 0 });
const cpuRounds = new Map<Kind, Array<{ cpu: number; system: number }>>(kinds.map((k) => [k, []]));
for (let r = 0; r < CPU_ROUNDS; r++) {
  // Several rounds, each with texts of its own (the spam check's duplicates): the median is the figure.
  for (const kind of r % 2 ? [...kinds].reverse() : kinds) {
    only(kind);
    cpuRounds.get(kind)!.push(await cpuRound(kind, bots.get(kind)!, r));
  }
}
for (const bot of bots.values()) {
  bot.kill("SIGCONT");
  bot.send({ cmd: "stop" });
}
await Promise.all([...bots.values()].map((b) => once(b, "exit")));

const figures = (kind: Kind): Figures => {
  const rs = cpuRounds.get(kind)!;
  return {
    ...loads.get(kind)!,
    cpuMs: rs.map((x) => x.cpu).sort((a, b) => a - b)[Math.floor(CPU_ROUNDS / 2)]!,
    cpuRounds: rs.map((x) => x.cpu),
    systemRounds: rs.map((x) => x.system),
  };
};
const peer = ONLY_OURS ? undefined : figures("grammy");
const ours = figures("bots");
const limit = (N / CONC) * LAT;
const row = (name: string, a: string, b: string | undefined, ratio: number, goal: string) =>
  console.log(`${name.padEnd(44)} ${a.padStart(9)} ${(b ?? "-").padStart(14)} ${(b ? ratio.toFixed(2) : "-").padStart(7)}   ${goal}`);
const ms = (x: number) => `${x.toFixed(x < 10 ? 2 : 0)} ms`;
console.log(`bench/peer  messages=${N} chats=${C} model_latency=${LAT} ms concurrency=${CONC} hang=${HANG} ms db=sqlite`);
console.log(`${"figure".padEnd(44)} ${"bots".padStart(9)} ${"grammY runner".padStart(14)} ${"ratio".padStart(7)}   goal`);
row(
  `wall time / limit ${(limit / 1000).toFixed(1)} s`,
  (ours.wallMs / limit).toFixed(2),
  peer && (peer.wallMs / limit).toFixed(2),
  ours.wallMs / (peer?.wallMs ?? 1),
  "ratio ≤ 1.00",
);
row(
  "first model call after the first send",
  ms(ours.firstCallMs),
  peer && ms(peer.firstCallMs),
  ours.firstCallMs / (peer?.firstCallMs ?? 1),
  "(part of the wall time)",
);
row(
  `p90 latency of other chats, one call hangs`,
  ms(ours.hangP90),
  peer && ms(peer.hangP90),
  ours.hangP90 / (peer?.hangP90 ?? 1),
  `(n=${ours.hangN}/${peer?.hangN ?? "-"})`,
);
row(`CPU per message, instant model (median of ${CPU_ROUNDS})`, ms(ours.cpuMs), peer && ms(peer.cpuMs), ours.cpuMs / (peer?.cpuMs ?? 1), "ratio ≤ 1.50");
const rounds = (f: Figures) => f.cpuRounds.map((x, i) => `${x.toFixed(2)} (system ${f.systemRounds[i]!.toFixed(2)})`).join(" / ");
console.log(`  rounds: bots ${rounds(ours)} ms${peer ? `; grammY runner ${rounds(peer)} ms` : ""}`);
if (peer) {
  // The two rounds of one pair ran back to back: their ratio is the least touched by the
  // machine's speed, which on a shared VM changes within minutes.
  const paired = ours.cpuRounds.map((x, i) => x / peer.cpuRounds[i]!).sort((a, b) => a - b);
  console.log(
    `  ratio of each pair of rounds (run back to back): ${paired.map((x) => x.toFixed(2)).join(" / ")}; median ${paired[Math.floor(paired.length / 2)]!.toFixed(2)}`,
  );
}

world.send({ cmd: "stop" });
model.send({ cmd: "stop" });
await Promise.all([once(world, "exit"), once(model, "exit")]);
process.exit(0);
