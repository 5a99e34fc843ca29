import sys
from pathlib import Path

# make ``benchmarks/`` scripts importable from the suite
sys.path.insert(0, str(Path(__file__).resolve().parent))
