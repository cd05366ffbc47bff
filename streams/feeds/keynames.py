"""What a key's name suggests: a weak, multilingual prior for field roles.

Key names are never decisive (the profiler decides by values), but they break ties and lend
confidence. A key path is split into word tokens (camelCase, digits, punctuation and namespace
prefixes split; accents folded; ``Ürün Ad\u0131`` -> ``urun adi``), and each role has a small list of
words in several languages. A token matches a word when equal to it, or, for words of four or
more letters, when it ends with it (compounds such as ``Verkaufspreis`` or ``Warengruppe``).
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Final

from prodcat.streams.feeds.flatten import Op, parse_path

__all__ = ["WORDS", "key_tokens", "name_prior", "path_words"]

_SPLIT: Final = re.compile(r"[\W_]+")
_CAMEL: Final = re.compile(
    r"(?<=[a-z])(?=[A-Z])|(?<=[A-Z])(?=[A-Z][a-z])|(?<=\D)(?=\d)|(?<=\d)(?=\D)"
)
_FOLD: Final = str.maketrans(
    {"\u0131": "i", "ß": "ss", "ø": "o", "æ": "ae", "œ": "oe", "ð": "d", "þ": "th"}
)


def _fold(text: str) -> str:
    text = text.translate(_FOLD)
    decomposed = unicodedata.normalize("NFKD", text)
    return "".join(char for char in decomposed if not unicodedata.combining(char))


def _words(text: str) -> frozenset[str]:
    return frozenset(_fold(word).lower() for word in text.split())


WORDS: Final[dict[str, frozenset[str]]] = {
    "title": _words(
        "title titel titulo titre titolo tytul baslik otsikko name naam nome nombre nom namn navn "
        "nimi nazwa nazev ad adi isim bezeichnung benennung designation denominacion "
        "denominazione libelle headline heading название наименование 名称 商品名 品名 标题 タイトル"
    ),
    "brand": _words(
        "brand brands marke marca marque merk merke marka marchio manufacturer hersteller "
        "fabricante fabrikant producent produsent tillverkare valmistaja producer maker бренд "
        "производитель 品牌 ブランド メーカー"
    ),
    "category": _words(
        "category categories categorie categoria categorias kategorie kategorien kategori "
        "kategoria kategorija categ cat taxonomy breadcrumb breadcrumbs department abteilung "
        "departamento rayon section sektion seccion sezione group gruppe grupo groupe gruppo "
        "groep grupa family familie familia famille class klasse clase classe classification "
        "type typ tipo tur sortiment assortment segment genre rubrik rubrique категория 类别 "
        "分类 类目 カテゴリ カテゴリー"
    ),
    "price": _words(
        "price prices preis preise prix precio preco prezzo prijs pris fiyat cena cijena hinta "
        "kaina harga gia cost amount betrag importe цена стоимость 价格 価格 售价 値段"
    ),
    "sale": _words(
        "sale sales offer special promo promotion discount discounted reduced deal angebot "
        "aktion oferta promocion promocao soldes offerta sconto indirim indirimli tilbud rea "
        "rabatt korting aanbieding final current now selling sell"
    ),
    "list": _words(
        "list regular retail original old normal mrp rrp uvp msrp before was compare strike "
        "strikethrough full standard statt antes anterior vorher eski ordinarie usual reference"
    ),
    "currency": _words("currency waehrung wahrung moneda moeda valuta devise divisa ccy"),
    "description": _words(
        "description descriptions desc beschreibung descripcion descricao descrizione "
        "omschrijving beskrivning beskrivelse kuvaus opis popis aciklama details detail summary "
        "body about описание 描述 説明 详情"
    ),
    "image": _words(
        "image images img imgs picture pictures pic photo photos foto fotos bild bilder imagen "
        "imagenes imagem imagens immagine immagini afbeelding kuva zdjecie resim gorsel "
        "thumbnail thumb изображение фото 图片 画像"
    ),
    "url": _words(
        "url urls link links href permalink uri lien enlace collegamento landing deeplink"
    ),
    "id": _words(
        "id ids sku skus code ean gtin upc isbn mpn pid asin nr num number nummer numero kod "
        "kodu codigo codice artnr ref identifier"
    ),
    "gender": _words(
        "gender genders sex geschlecht genero sexe genere geslacht kon kjonn cinsiyet plec"
    ),
    "sizes": _words(
        "size sizes groesse grosse talla tallas tamanho taille tailles taglia taglie maat maten "
        "beden storlek storrelse rozmiar velikost koko"
    ),
    "retailer": _words(
        "retailer retailers shop shops store stores market markets merchant merchants seller "
        "sellers haendler handler tienda loja magasin negozio winkel butik butikk magaza sklep"
    ),
    # Things that are not a product category even when their values nest like one.
    "not_category": _words(
        "country countries land pais pays paese ulke region regio subregion city stadt ciudad "
        "cidade ville state province provincia district origin herkunft origen origem zip postal "
        "address street language sprache idioma color colour farbe cor couleur colore kleur "
        "farge farg renk material status availability stock condition unit date time year "
        "season manufacturer hersteller brand marke marca marque merk marka vendor supplier "
        "wholesaler gender sex size"
    ),
}


@lru_cache(maxsize=8192)
def key_tokens(key: str) -> tuple[str, ...]:
    """Word tokens of one key, lower case and accent-folded."""
    spaced = _CAMEL.sub(" ", _fold(key))
    return tuple(token for token in _SPLIT.split(spaced.lower()) if token)


def _matches(token: str, words: frozenset[str]) -> bool:
    if token in words:
        return True
    return len(token) > 4 and any(len(word) >= 4 and token.endswith(word) for word in words)


@lru_cache(maxsize=8192)
def path_words(path: str) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """(tokens of the last key, tokens of the keys above it) of a source path."""
    keys = [step for step in parse_path(path) if not isinstance(step, Op)]
    if not keys:
        return (), ()
    above = tuple(token for key in keys[:-1] for token in key_tokens(key))
    return key_tokens(keys[-1]), above


@lru_cache(maxsize=32768)
def name_prior(path: str, role: str) -> float:
    """How strongly the key names of ``path`` suggest ``role``: 1 (its own key), 0.5 (an
    enclosing key) or 0."""
    words = WORDS[role]
    last, above = path_words(path)
    if any(_matches(token, words) for token in last):
        return 1.0
    if any(_matches(token, words) for token in above):
        return 0.5
    return 0.0
