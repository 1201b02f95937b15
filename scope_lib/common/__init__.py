"""The ground floor: statistics, run storage, integrity hashes, progress bars and plotting style; imports nothing else from scope_lib."""
