"""Many scans as jobs: planning inputs and outputs, shards across machines, worker processes."""
