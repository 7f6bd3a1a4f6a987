CREATE TABLE catalog_pricehistory (
  id INTEGER PRIMARY KEY AUTOINCREMENT, product_id INTEGER NOT NULL,
  old_price DECIMAL(10, 2) NOT NULL, new_price DECIMAL(10, 2) NOT NULL,
  changed_by_id INTEGER NULL, changed_at DATETIME NOT NULL);
INSERT INTO catalog_pricehistory (product_id, old_price, new_price, changed_by_id, changed_at) VALUES
  (1, '10.00', '12.50', 1, '2026-01-02 10:00:00'), (1, '12.50', '11.99', 2, '2026-01-03 11:30:00'),
  (2, '5.25', '5.75', NULL, '2026-01-04 09:15:00'), (3, '100.00', '89.90', 1, '2026-01-05 16:45:00');
