{% snapshot product %}
{{ config(target_schema='main', unique_key='product_id', strategy='check', check_cols='all',
          hard_deletes='invalidate') }}
select * from read_json('{{ var("landing") }}/products_{{ var("day") }}.json', format = 'array',
                        columns = {'name': 'VARCHAR', 'product_id': 'VARCHAR',
                                   'price': 'VARCHAR', 'description': 'VARCHAR',
                                   'creation_date': 'VARCHAR'})
{% endsnapshot %}
