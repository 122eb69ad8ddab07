/** The database used when neither `--db` nor `DATABASE_URL` is given. */
export const DEFAULT_DATABASE_URL = "sqlite:data/bots.db";
