"""PostgreSQL access with asyncpg: pool, migrations and one repository module per aggregate."""
