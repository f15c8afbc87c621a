"""Where a model runs: devices, mixed precision, several processes (torch.distributed), the CPU allocator."""
