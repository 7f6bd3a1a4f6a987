CREATE TABLE price_changes (
  id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL,
  old_price_cents INTEGER NOT NULL, new_price_cents INTEGER NOT NULL,
  changed_by INTEGER NULL, changed_at DATETIME NOT NULL);
