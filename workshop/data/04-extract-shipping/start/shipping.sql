CREATE TABLE shipments (
  id INTEGER PRIMARY KEY, order_id INTEGER NOT NULL, carrier_name VARCHAR(40) NOT NULL,
  tracking_code VARCHAR(64) NOT NULL, status VARCHAR(20) NOT NULL, shipped_at DATETIME NULL);
