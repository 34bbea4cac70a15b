"""Install Tunnelhound's assets into the stores it writes to (``tunnelhound setup``)."""

from tunnelhound.setup.elasticsearch import (
    AssetResult,
    Capabilities,
    SetupError,
    SetupReport,
    install_assets,
    load_assets,
)

__all__ = ["AssetResult", "Capabilities", "SetupError", "SetupReport", "install_assets", "load_assets"]
