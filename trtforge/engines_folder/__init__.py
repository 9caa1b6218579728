"""What a published engines/ folder carries beyond the engines: its index.json with digests
(`index`) and their signature (`signing`). Shared: the driver writes them, `trtforge verify` reads them."""
