"""Data: Kaggle loader, validation, synthetic generator and the canonical parquet files."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # pragma: no cover
    import pandas as pd

    from app.config import Settings

SALES_FILE = "sales.parquet"
STORES_FILE = "stores.parquet"


@dataclass(frozen=True)
class PreparedData:
    """What :func:`prepare` wrote."""

    source: str
    sales_path: Path
    stores_path: Path
    rows: int
    stores: int
    first_date: str
    last_date: str


def prepare(settings: Settings, rossmann_dir: Path | None = None, out_dir: Path | None = None) -> PreparedData:
    """Load (Kaggle files) or generate (synthetic) the dataset, validate it and write canonical parquet.

    Args:
        settings: The settings (``rossmann_dir``, ``synthetic_*``, ``data_dir``).
        rossmann_dir: Folder with the Kaggle files; overrides ``settings.rossmann_dir``.
        out_dir: Output folder; default ``settings.data_dir``.
    """
    from app.data import kaggle, synthetic
    from app.data.validation import validate_pair, validate_sales, validate_stores

    folder = rossmann_dir or settings.rossmann_dir
    if folder is not None:
        train_path, store_path = kaggle.find_files(Path(folder))
        sales = kaggle.load_train(train_path)
        stores = kaggle.load_stores(store_path)
        source = f"kaggle:{Path(folder).resolve()}"
    else:
        sales, stores = synthetic.generate(
            settings.synthetic_seed, settings.synthetic_stores, settings.synthetic_start, settings.synthetic_end
        )
        validate_sales(sales, "synthetic sales")
        validate_stores(stores, "synthetic stores")
        source = f"synthetic:seed={settings.synthetic_seed}"
    validate_pair(sales, stores, source)
    out = Path(out_dir or settings.data_dir)
    out.mkdir(parents=True, exist_ok=True)
    sales_path, stores_path = out / SALES_FILE, out / STORES_FILE
    sales.to_parquet(sales_path, index=False)
    stores.to_parquet(stores_path, index=False)
    return PreparedData(
        source=source,
        sales_path=sales_path,
        stores_path=stores_path,
        rows=len(sales),
        stores=int(sales["store"].nunique()),
        first_date=str(sales["date"].min().date()),
        last_date=str(sales["date"].max().date()),
    )


def load_dataset(settings: Settings, data_dir: Path | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Read the canonical ``(sales, stores)`` frames written by :func:`prepare` (``sfmlops data``)."""
    import pandas as pd

    folder = Path(data_dir or settings.data_dir)
    sales_path, stores_path = folder / SALES_FILE, folder / STORES_FILE
    if not sales_path.is_file() or not stores_path.is_file():
        raise FileNotFoundError(f"no prepared data in {folder}: run `sfmlops data` first")
    return pd.read_parquet(sales_path), pd.read_parquet(stores_path)
