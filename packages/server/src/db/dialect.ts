/** The two supported databases: SQLite for one machine, PostgreSQL for many control planes. */
export type Dialect = 'sqlite' | 'postgres';
