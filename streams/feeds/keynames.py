"""What a key's name suggests: a weak, multilingual prior for field roles.

Key names are never decisive (the profiler decides by values), but they break ties and lend
confidence. A key path is split into word tokens (camelCase, digits, punctuation and namespace
prefixes split; accents folded; ``Ürün Ad\u0131`` -> ``urun adi``), and each role has a small list of
words in several languages. A token matches a word when equal to it, or, for words of four or
more letters, when it ends with it and is at least two letters longer (compounds such as
``Verkaufspreis`` or ``Warengruppe``, but not ``ocena``, a rating, for ``cena``); in scripts
written without spaces a word of two or more characters matches anywhere in the key
(``商品説明``, ``ブランド名``).
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
_UNSPACED: Final = re.compile("[\u0e00-\u0eff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uac00-\ud7af]")
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
        "judul nama tieu ten tenhang produktnavn produktname 名前 商品名称 品名 名字 상품명 "
        "제품명 이름 ชื่อ title titel titulo titre titolo tytul baslik otsikko name "
        "naam nome nombre nom namn navn nimi nazwa nazev ad adi isim bezeichnung "
        "benennung designation denominacion denominazione libelle headline "
        "heading название наименование 名称 商品名 品名 标题 タイトル"
    ),
    "brand": _words(
        "markasi merek produttore fabricant fabbricante proizvodjac vyrobce "
        "gyarto 브랜드 제조사 制造商 厂商 ยี่ห้อ brand brands marke marca marque merk merke "
        "marka marchio manufacturer hersteller fabricante fabrikant producent "
        "produsent tillverkare valmistaja producer maker бренд производитель 品牌 "
        "ブランド メーカー"
    ),
    "category": _words(
        "kategorisi reparto rubrica settore afdeling avdelning osasto dzial "
        "rodzaj jenis tipe golongan grubu grup kategoriya 分類 ジャンル 種類 카테고리 분류 "
        "หมวดหมู่ category categories categorie categoria categorias kategorie "
        "kategorien kategori kategoria kategorija categ cat taxonomy breadcrumb "
        "breadcrumbs department abteilung departamento rayon section sektion "
        "seccion sezione group gruppe grupo groupe gruppo groep grupa family "
        "familie familia famille class klasse clase classe classification type "
        "typ tipo tur sortiment assortment segment genre rubrik rubrique "
        "категория 类别 分类 类目 カテゴリ カテゴリー"
    ),
    "price": _words(
        "fiyati pret tarif tarifa preu cenas giaban 가격 판매가 ราคา 値段 単価 price "
        "prices preis preise prix precio preco prezzo prijs pris fiyat cena "
        "cijena hinta kaina harga gia cost amount betrag importe цена стоимость "
        "价格 価格 售价 値段"
    ),
    "sale": _words(
        "sale sales offer special promo promotion discount discounted reduced "
        "deal angebot aktion oferta promocion promocao soldes offerta sconto "
        "indirim indirimli tilbud rea rabatt korting aanbieding final current now "
        "selling sell"
    ),
    "list": _words(
        "list regular retail original old normal mrp rrp uvp msrp before was "
        "compare strike strikethrough full standard statt antes anterior vorher "
        "eski ordinarie usual reference"
    ),
    "currency": _words("currency waehrung wahrung moneda moeda valuta devise divisa ccy"),
    "description": _words(
        "aciklamasi deskripsi keterangan uraian beschrijving descricao kuvaus 詳細 "
        "説明文 설명 รายละเอียด description descriptions desc beschreibung descripcion "
        "descricao descrizione omschrijving beskrivning beskrivelse kuvaus opis "
        "popis aciklama details detail summary body about описание 描述 説明 详情"
    ),
    "image": _words(
        "gambar obraz obrazek slika kep 이미지 写真 image images img imgs picture "
        "pictures pic photo photos foto fotos bild bilder imagen imagenes imagem "
        "imagens immagine immagini afbeelding kuva zdjecie resim gorsel thumbnail "
        "thumb изображение фото 图片 画像"
    ),
    "url": _words(
        "tautan odnosnik odkaz hivatkozas リンク 링크 url urls link links href "
        "permalink uri lien enlace collegamento landing deeplink"
    ),
    "id": _words(
        "kode nomor numer коде コード 品番 型番 番号 번호 id ids sku skus code ean gtin upc "
        "isbn mpn pid asin nr num number nummer numero kod kodu codigo codice "
        "artnr ref identifier"
    ),
    "gender": _words(
        "kelamin pohlavi nem 性別 性别 성별 gender genders sex geschlecht genero sexe "
        "genere geslacht kon kjonn cinsiyet plec"
    ),
    "sizes": _words(
        "ukuran velicina meret サイズ 사이즈 尺码 size sizes groesse grosse talla tallas "
        "tamanho taille tailles taglia taglie maat maten beden storlek storrelse "
        "rozmiar velikost koko"
    ),
    "retailer": _words(
        "toko penjual sprzedawca venditore vendeur verkaeufer ショップ 店舗 판매자 "
        "retailer retailers shop shops store stores market markets merchant "
        "merchants seller sellers haendler handler tienda loja magasin negozio "
        "winkel butik butikk magaza sklep"
    ),
    # Things that are not a product category even when their values nest like one.
    "not_category": _words(
        "paese kraj negara orszag 国 産地 원산지 marchio merek produttore fabricant "
        "warna kolor colore szin 色 カラー 색상 ukuran rozmiar taglia talla maat サイズ "
        "country countries land pais pays paese ulke region regio subregion city "
        "stadt ciudad cidade ville state province provincia district origin "
        "herkunft origen origem zip postal address street language sprache idioma "
        "color colour farbe cor couleur colore kleur farge farg renk material "
        "status availability stock condition unit date time year season "
        "manufacturer hersteller brand marke marca marque merk marka vendor "
        "supplier wholesaler gender sex size"
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
    if _UNSPACED.match(token):
        # scripts written without spaces compound without a separator, head first or last
        # (``商品説明``, ``ブランド名``): a word of two or more characters anywhere in the key
        return any(len(word) >= 2 and word in token for word in words)
    return len(token) > 5 and any(
        len(word) >= 4 and len(token) >= len(word) + 2 and token.endswith(word) for word in words
    )


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
