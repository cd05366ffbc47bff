"""Image URL discovery anywhere in a record."""

from __future__ import annotations

from prodcat.streams.images import MAX_IMAGES, find_image_urls


def test_flipkart_list_string() -> None:
    record = {
        "image": '["http://img5a.flixcart.com/a.jpeg", "http://img5a.flixcart.com/b.jpeg"]',
        "product_url": "http://www.flipkart.com/p/itm1",
    }
    assert find_image_urls(record) == [
        "http://img5a.flixcart.com/a.jpeg",
        "http://img5a.flixcart.com/b.jpeg",
    ]


def test_keys_and_extensions() -> None:
    record = {
        "link": "https://shop.example/p/1",  # no extension, not an image key
        "thumbnail": "https://cdn.example/t?id=1",  # image key, no extension
        "other": "https://cdn.example/x.PNG?w=10",  # extension
        "local": "file:///data/images/1.jpg",
        "not_url": "/images/2.jpg",
        "nested": {"styleImages": {"default": {"imageURL": "http://cdn.example/d"}}},
        "text": "see http://cdn.example/in-text.jpg",
    }
    assert find_image_urls(record) == [
        "https://cdn.example/t?id=1",
        "http://cdn.example/d",
        "https://cdn.example/x.PNG?w=10",
        "file:///data/images/1.jpg",
    ]


def test_primary_before_secondary_deduplicated_and_capped() -> None:
    record = {
        "gallery": {"sizes": {f"w{i}": f"http://cdn.example/{i}.jpg" for i in range(30)}},
        "images": ["http://cdn.example/main.jpg", "http://cdn.example/main.jpg"],
    }
    urls = find_image_urls(record)
    assert urls[0] == "http://cdn.example/main.jpg"
    assert len(urls) == MAX_IMAGES
    assert len(set(urls)) == len(urls)


def test_bounded_walk() -> None:
    deep: object = "http://cdn.example/deep.jpg"
    for _ in range(100):
        deep = [deep]
    assert find_image_urls({"x": deep}) == []
    wide = {f"k{i}": f"http://cdn.example/{i}.jpg" for i in range(100_000)}
    assert len(find_image_urls(wide)) == MAX_IMAGES
