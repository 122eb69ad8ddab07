import type { CompiledQuery, Compilable, Kysely, QueryResult } from "kysely";
import type { Schema } from "./schema.js";

/**
 * Runs a compiled query straight on the database: its result at once, a promise of it when the
 * query had to wait for the connection, or undefined when it must go through Kysely after all.
 * Throws what the query throws (a DatabaseError).
 */
export type DirectRun = <R>(query: CompiledQuery) => QueryResult<R> | Promise<QueryResult<R> | undefined> | undefined;

/** The direct runs of Kysely instances (SQLite: src/storage/db.ts). */
const directRuns = new WeakMap<object, DirectRun>();

/**
 * Lets the prepared queries run on `on` go straight to the database through `run`, without
 * Kysely's connection handling (which cost about as much as a statement on SQLite), for as long
 * as `on` lives.
 */
export function registerDirect(on: object, run: DirectRun): void {
  directRuns.set(on, run);
}

/** Marks a parameter slot while a query is compiled: never a value the code stores. */
const SLOT = "\u0000slot:";

/** A placeholder for the argument `name` while a query shape is built (see {@link PreparedQueries}). */
export type Slot = <T = string>(name: string) => T;

const slot: Slot = <T>(name: string) => `${SLOT}${name}` as unknown as T;

/**
 * Queries built and compiled by Kysely once per shape, then run again with new parameter values:
 * building and compiling a query cost about as much as running it on SQLite (bench/pipeline's
 * profile), and the statements of one message have a handful of shapes. A shape is built with
 * {@link Slot} placeholders where the values go; its compiled SQL keeps them as parameters,
 * which each run replaces by the arguments of the same names. On SQLite the same SQL text then
 * reuses its prepared statement (src/storage/db.ts). A shape must not depend on the values
 * (`key` names what it depends on: which optional columns, how many items in a list).
 */
export class PreparedQueries {
  private readonly shapes = new Map<string, { compiled: CompiledQuery; slots: Array<string | undefined> }>();

  /**
   * Runs the query of shape `key` on `on` (the database or a transaction) with `args`.
   * @param build builds the query with `p(name)` where argument `name` goes; called once per key
   * @throws Error when an argument the shape needs is missing; else what the query throws
   */
  run<R = unknown>(on: Kysely<Schema>, key: string, build: (p: Slot) => Compilable, args: Record<string, unknown>): Promise<QueryResult<R>> {
    let shape = this.shapes.get(key);
    if (!shape) {
      const compiled = build(slot).compile();
      const slots = compiled.parameters.map((v) => (typeof v === "string" && v.startsWith(SLOT) ? v.slice(SLOT.length) : undefined));
      shape = { compiled, slots };
      this.shapes.set(key, shape);
    }
    const { compiled, slots } = shape;
    const parameters = slots.map((name, i) => {
      if (name === undefined) return compiled.parameters[i];
      if (!(name in args)) throw new Error(`prepared query ${key}: no value for ${name}`);
      return args[name];
    });
    const query = { ...compiled, parameters };
    const direct = directRuns.get(on);
    if (!direct) return on.executeQuery<R>(query);
    let result: QueryResult<R> | Promise<QueryResult<R> | undefined> | undefined;
    try {
      result = direct<R>(query);
    } catch (error) {
      return Promise.reject(error);
    }
    if (result instanceof Promise) return result.then((r) => r ?? on.executeQuery<R>(query));
    return result ? Promise.resolve(result) : on.executeQuery<R>(query);
  }
}
