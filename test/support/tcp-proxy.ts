import net from "node:net";

/**
 * A TCP proxy on 127.0.0.1 (port 0) in front of a real server, for outage tests: `cut()` drops
 * every open connection and refuses new ones until `restore()`; `dropReplyTo(text)` lets the
 * next client packet containing `text` reach the server and then drops that connection instead
 * of passing the server's reply back (a write that committed while its reply was lost).
 */
export async function startTcpProxy(targetHost: string, targetPort: number) {
  const sockets = new Set<net.Socket>();
  let down = false;
  let dropOn: Buffer | undefined;
  let dropped = 0;
  const server = net.createServer((client) => {
    if (down) {
      client.destroy();
      return;
    }
    const upstream = net.connect(targetPort, targetHost);
    sockets.add(client).add(upstream);
    const close = () => {
      client.destroy();
      upstream.destroy();
      sockets.delete(client);
      sockets.delete(upstream);
    };
    client.on("error", close).on("close", close);
    upstream.on("error", close).on("close", close);
    let dropReply = false;
    client.on("data", (chunk: Buffer) => {
      if (dropOn && chunk.includes(dropOn)) {
        dropOn = undefined;
        dropReply = true;
      }
      upstream.write(chunk);
    });
    upstream.on("data", (chunk: Buffer) => {
      if (!dropReply) return void client.write(chunk);
      dropped++;
      close();
    });
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    /** Drops open connections and refuses new ones. */
    cut() {
      down = true;
      for (const s of sockets) s.destroy();
      sockets.clear();
    },
    restore() {
      down = false;
    },
    /** Arms a one-time lost reply: see above. `text` is matched in the raw client bytes (MySQL COM_QUERY carries the SQL as is). */
    dropReplyTo(text: string) {
      dropOn = Buffer.from(text);
    },
    /** Replies dropped so far by {@link dropReplyTo}. */
    get droppedReplies() {
      return dropped;
    },
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** A running proxy of {@link startTcpProxy}. */
export type TcpProxy = Awaited<ReturnType<typeof startTcpProxy>>;
