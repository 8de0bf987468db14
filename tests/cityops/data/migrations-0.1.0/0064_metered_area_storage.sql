-- Which inlet meters of a metered area are on a service reservoir (tank) rather than on a
-- source (treatment works, pumping station): a source's flow follows the clock day after day,
-- a tank's follows its level, so only sources are watched for a lost supply (alerts/balance.py).
ALTER TABLE metered_area_meters ADD COLUMN storage boolean NOT NULL DEFAULT false;
