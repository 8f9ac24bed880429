"""A run from recipe to trained model: the flow shared by every trainer (`flow.py`), the strict recipe parser
(`recipe.py`) and the launch checks (`distributed.py`)."""
