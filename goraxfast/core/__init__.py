"""The sans-IO core: decisions only. No asyncio, no os, no clocks: time is an argument."""
