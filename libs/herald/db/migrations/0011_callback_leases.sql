-- Several `herald sinks` processes each run a callback dispatcher over this one table. Each
-- poll now leases the rows it hands out (`leased_until`), so two dispatchers never send the same
-- callback; a dispatcher that dies holding rows lets them go when the lease ends.
ALTER TABLE callback_outbox ADD COLUMN leased_until timestamptz;
