"""Write a small product catalogue (products.csv + images/) from the sample photographs
that scikit-image ships, so visual search can be shown end to end offline.

    python examples/products/make_catalog.py [OUT_DIR]   # default: examples/products/out
    redrec ingest examples/products/out/products.csv --mapping examples/products/mapping.yaml
    redrec search --image examples/products/out/images/chelsea.png --catalog product_idx
"""

from __future__ import annotations

import csv
import shutil
import sys
from pathlib import Path

PRODUCTS = [
    # id, image file in skimage/data, name, description, category, price
    ("p1", "chelsea.png", "Tabby cat poster", "A ginger tabby cat looking sideways", "posters", 12),
    ("p2", "coffee.png", "Espresso cup", "A cup of coffee on a saucer with a spoon", "kitchen", 9),
    ("p3", "astronaut.png", "Astronaut print", "Portrait of an astronaut in a space suit", "posters", 15),
    ("p4", "rocket.jpg", "Rocket launch print", "A rocket on its launch pad", "posters", 14),
    ("p5", "coins.png", "Old coins set", "A collection of old coins on a table", "collectibles", 40),
    ("p6", "horse.png", "Horse silhouette", "Black silhouette of a horse", "decor", 8),
    ("p7", "moon.png", "Moon surface photo", "Craters on the surface of the moon", "posters", 11),
    ("p8", "camera.png", "Photographer print", "A man with a camera on a tripod", "posters", 10),
    ("p9", "brick.png", "Brick wall texture", "A red brick wall pattern", "decor", 6),
    ("p10", "grass.png", "Grass texture", "Close-up of green grass", "decor", 6),
    ("p11", "gravel.png", "Gravel texture", "Grey gravel stones", "decor", 5),
    ("p12", "hubble_deep_field.jpg", "Deep field galaxies", "Thousands of distant galaxies", "posters", 18),
    ("p13", "motorcycle_left.png", "Motorcycle photo", "A motorcycle in a garage", "posters", 13),
    ("p14", "page.png", "Book page", "A scanned page of printed text", "stationery", 3),
    ("p15", "retina.jpg", "Retina image", "A photograph of the back of an eye", "science", 7),
]


def build(out: Path) -> Path:
    import skimage

    data = Path(skimage.__file__).parent / "data"
    (out / "images").mkdir(parents=True, exist_ok=True)
    rows = []
    for pid, image, name, desc, cat, price in PRODUCTS:
        shutil.copy(data / image, out / "images" / image)
        rows.append({"product_id": pid, "name": name, "description": desc, "category": cat,
                     "price": price, "image": f"images/{image}"})
    path = out / "products.csv"
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


if __name__ == "__main__":
    target = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).parent / "out"
    print(build(target))
