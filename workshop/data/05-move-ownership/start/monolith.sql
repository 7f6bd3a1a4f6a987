CREATE TABLE catalog_product (id INTEGER PRIMARY KEY AUTOINCREMENT, name TEXT NOT NULL,
  price DECIMAL(10, 2) NOT NULL, stock_count INTEGER NOT NULL);
INSERT INTO catalog_product (name, price, stock_count) VALUES ('mug', '10.00', 5), ('pot', '20.00', 7), ('lid', '3.50', 40);
