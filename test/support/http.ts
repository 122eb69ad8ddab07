import http from "node:http";
import type { AddressInfo } from "node:net";

/** Starts an HTTP server on 127.0.0.1 with a port of its own (port 0). */
export async function listenLocal(handler: http.RequestListener): Promise<http.Server> {
  const server = http.createServer(handler);
  // Short keep-alive so a stopped test leaves no idle sockets behind for long.
  server.keepAliveTimeout = 1000;
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return server;
}

/** `http://127.0.0.1:<port>` of a listening server. */
export function originOf(server: http.Server): string {
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
}

/** Closes a server together with its open connections. */
export async function closeServer(server: http.Server | undefined): Promise<void> {
  if (!server) return;
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
