"""Supply chain: the SBOM rendered from uv.lock and shipped in the package, the installed set, the offline OSV check."""
