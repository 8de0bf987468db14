-- Alerts with the location of their sensor, for OGC API - Features (time field: raised_at).
CREATE VIEW alert_locations AS
SELECT a.alert_id, a.sensor_id, a.utility, a.quantity, a.kind, a.severity, a.state,
       a.raised_at, a.cleared_at, a.value, s.asset_id, s.district_adcode, s.geom
FROM alerts a JOIN sensors s ON s.sensor_id = a.sensor_id;
