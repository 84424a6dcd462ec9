"""Where the run state goes: a Pushgateway, a /metrics endpoint, the end-of-stream summary."""
